"""The Salesforce connector and its sandbox."""
