"""The service layer: one function per user action, shared by the CLI, the dashboard and the job runner."""
