"""The edge (gateway/edge/): strict HTTP parsing, every deadline on a client, errors as answers."""
