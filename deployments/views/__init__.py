"""Pages of the deployments app, one module per resource."""
