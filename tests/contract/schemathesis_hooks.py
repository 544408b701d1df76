"""schemathesis hooks (loaded through SCHEMATHESIS_HOOKS by test_schemathesis.py): path
parameters name the live portal's real objects, so requests reach the code behind the 404.

A case whose path parameters are the negative part keeps them: those requests test the 404
itself. The values come from CONTRACT_PATH_VALUES: {"METHOD /path/{param}/": {param: value}}."""

import json
import os

import schemathesis
from schemathesis.core.parameters import ParameterLocation
from schemathesis.generation import GenerationMode

VALUES = json.loads(os.environ.get("CONTRACT_PATH_VALUES", "{}"))


@schemathesis.hook
def map_case(context, case):
    values = VALUES.get(f"{case.method.upper()} {case.path}")
    if not values:
        return case
    path = case.meta.components.get(ParameterLocation.PATH) if case.meta else None
    if path is None or path.mode is not GenerationMode.NEGATIVE:
        case.path_parameters = {**case.path_parameters, **values}
    return case
