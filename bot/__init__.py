"""incident-bot: investigates alerts with read-only tools and acts only on human approval."""
