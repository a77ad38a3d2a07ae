"""Per-customer features (RFM, ARPU, usage, tenure, holdings, service contacts) and segments."""
