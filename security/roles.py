"""Roles and the permissions each one grants."""

READ_CLASSIFICATIONS = "read:classifications"
CREATE_CLASSIFICATIONS = "create:classifications"
MANAGE_USERS = "manage:users"
VIEW_METRICS = "view:metrics"

ROLE_PERMISSIONS = {
    "admin": frozenset(
        {READ_CLASSIFICATIONS, CREATE_CLASSIFICATIONS, MANAGE_USERS, VIEW_METRICS}
    ),
    "operator": frozenset({READ_CLASSIFICATIONS, CREATE_CLASSIFICATIONS}),
    "viewer": frozenset({READ_CLASSIFICATIONS, VIEW_METRICS}),
    "api_user": frozenset({CREATE_CLASSIFICATIONS}),
}

ROLES = tuple(ROLE_PERMISSIONS)


def allows(role, permission):
    """Return whether ``role`` holds ``permission``."""
    return permission in ROLE_PERMISSIONS.get(role, frozenset())
