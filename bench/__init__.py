"""`make bench`: AWS calls per operation, cold start, load on the local stack, and cost per connection-hour."""
