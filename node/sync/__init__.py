"""Talking to peers: secure links, the sync session, replication, peers and mDNS discovery, ingest of entries."""
