"""ghapp: a preview environment for every pull request."""
