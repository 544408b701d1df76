from mlops_portal.roles import AUTHORS, OPERATORS, has_role, role_label


def roles(request):
    """Role flags for templates; they only hide buttons, services enforce the rules."""
    user = request.user
    if not user.is_authenticated:
        return {}
    return {
        "user_role": role_label(user),
        "user_is_author": has_role(user, AUTHORS),
        "user_is_operator": has_role(user, OPERATORS),
    }
