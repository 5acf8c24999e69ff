//! Capture-file adapter (pcap, pcapng, compressed, stdin).
