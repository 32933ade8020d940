from soap_service.cli import main

raise SystemExit(main())
