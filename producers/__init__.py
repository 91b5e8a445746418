"""Department producer library, the wire contract and the traffic simulator."""
