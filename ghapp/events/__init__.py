"""One module and one gidgethub Router per event; `router` composes them."""
from gidgethub.routing import Router

from ghapp.events import pull_request

router = Router(pull_request.router)
