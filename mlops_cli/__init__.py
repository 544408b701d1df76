"""`mlops`: the portal's command line for pipelines and people. It talks only to the REST
API (`/api/v1/`) with httpx and imports nothing of the portal, so it runs anywhere Python,
click and httpx do."""
