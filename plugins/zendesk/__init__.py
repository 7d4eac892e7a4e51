"""The Zendesk connector and its sandbox."""
