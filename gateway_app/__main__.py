from gateway_app.cli import main

raise SystemExit(main())
