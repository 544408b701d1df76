"""The MLflow Model Registry REST API (`/api/2.0/mlflow/`) over the portal's own registry.

It translates MLflow's wire format to and from `deployments.services`: no second registry.
`views` answers each endpoint, `params` reads requests, `search` parses MLflow's filter
grammar into querysets, `wire` writes MLflow's JSON, `auth` reads the credentials."""
