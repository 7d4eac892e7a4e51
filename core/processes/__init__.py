"""The Procfile's processes beyond web and worker: all-in-one embedded mode, the poll scheduler, graceful stop."""
