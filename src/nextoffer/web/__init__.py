"""The operator console: server-rendered pages on the API app, behind the API's user accounts."""
