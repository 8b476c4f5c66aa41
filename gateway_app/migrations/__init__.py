"""The gateway's schema migrations (Alembic), shipped in the package.

``versions/`` holds the revisions; `runner` reads where a database stands and upgrades it under
`lock`'s migration lock; `legacy` recognises databases made before migrations existed. Use them
through `gateway_app.database`; README, "Changing the schema", says how to add a revision.
"""

import logging

# Alembic's INFO lines (plugin set-up at import, "Context impl ...") say less than the gateway's own
# "database: schema upgraded from ... to ..."; an explicitly configured level is left alone.
if logging.getLogger("alembic").level == logging.NOTSET:
    logging.getLogger("alembic").setLevel(logging.WARNING)
