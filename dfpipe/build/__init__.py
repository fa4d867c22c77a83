"""`dfpipe build`: a whole benchmark from one recipe (issue 15)."""
