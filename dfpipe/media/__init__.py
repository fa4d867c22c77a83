"""Media made on the fly: short real-face clips for the demo and the tests."""
