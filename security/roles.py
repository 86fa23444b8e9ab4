"""Roles and the permissions each one grants.

The four roles and four permissions are the security design's. One more,
``read:classifications:all``, says whose jobs a key may read: admins and
viewers (who watch the whole service) read every job; operators read the
jobs submitted with their own key; api users submit only and read nothing
(their results reach them by webhook). A job of another key answers 404,
as if it did not exist.
"""

READ_CLASSIFICATIONS = "read:classifications"
READ_ALL_CLASSIFICATIONS = "read:classifications:all"
CREATE_CLASSIFICATIONS = "create:classifications"
MANAGE_USERS = "manage:users"
VIEW_METRICS = "view:metrics"

ROLE_PERMISSIONS = {
    "admin": frozenset(
        {
            READ_CLASSIFICATIONS,
            READ_ALL_CLASSIFICATIONS,
            CREATE_CLASSIFICATIONS,
            MANAGE_USERS,
            VIEW_METRICS,
        }
    ),
    "operator": frozenset({READ_CLASSIFICATIONS, CREATE_CLASSIFICATIONS}),
    "viewer": frozenset({READ_CLASSIFICATIONS, READ_ALL_CLASSIFICATIONS, VIEW_METRICS}),
    "api_user": frozenset({CREATE_CLASSIFICATIONS}),
}

ROLES = tuple(ROLE_PERMISSIONS)


def allows(role, permission):
    """Return whether ``role`` holds ``permission``."""
    return permission in ROLE_PERMISSIONS.get(role, frozenset())
