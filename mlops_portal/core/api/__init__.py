"""API plumbing every app's API stands on: authentication, parsers, renderers, errors,
pagination, permissions and the service-backed viewset."""
