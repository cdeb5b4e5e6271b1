"""`thriftgate demo`: a local provider and a workload that show the dashboards moving."""
