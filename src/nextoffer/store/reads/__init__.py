"""Read repositories: the questions the API, console, KPIs and jobs ask, each written once.

One module per area (customers, churn, offers, catalogue, jobs, quarantine, kpis). Each
function takes an engine or a connection and returns plain read models (frozen dataclasses,
numbers, aware UTC datetimes), so no caller outside `store` builds SQL.
"""
