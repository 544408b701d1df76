"""Starter pages: the structure a team expects, ready to fill in."""

STARTERS = {
    "runbook": (
        "Runbook: ",
        """## Summary
What this service does and who owns it.

## Dashboards and checks
- Health checks: (link)
- Model: model:name

## Alerts and what to do
| Alert | First step | Escalate to |
|---|---|---|
| Check down | Look at the deployment log | MLOps on-call |

## Rollback
1. Open the live deployment.
2. Roll back with a reason.

## Architecture
```mermaid
graph LR
  Client --> Endpoint[Model endpoint] --> Model
```
""",
    ),
    "postmortem": (
        "Postmortem: ",
        """## Summary
What happened, in two sentences.

## Impact
Who was affected, for how long.

## Timeline
(times in UTC)

## Root cause

## What went well / what went badly

## Action items
| Action | Owner | Ticket |
|---|---|---|
""",
    ),
    "model-design": (
        "Model design: ",
        """## Problem and success metric

## Data
Sources, features, labels, known biases.

## Model
Algorithm, training set-up, offline metrics (see model:name).

## Serving
Latency budget, inputs and outputs, fallbacks.

## Risks and monitoring
""",
    ),
}
