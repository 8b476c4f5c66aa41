"""``python -m examples.servers.conformance_fixture [--transport stdio|http] [--host H] [--port P]``."""

from examples.servers.conformance_fixture.server import main

main()
