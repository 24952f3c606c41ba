"""`make deploy`'s last step: the web pages, their configuration and the CDN, from the stack's outputs."""
