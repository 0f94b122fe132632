"""One module and one gidgethub Router per event; `router` composes them."""

from gidgethub.routing import Router

from ghapp.web.events import check_run, checks, github_app_authorization, installation, issue_comment, pull_request

router = Router(
    pull_request.router,
    issue_comment.router,
    check_run.router,
    checks.router,
    installation.router,
    github_app_authorization.router,
)
