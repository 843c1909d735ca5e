"""Everything Redis (gateway/store/): store logic, Cluster, replica acknowledgement, failover."""
