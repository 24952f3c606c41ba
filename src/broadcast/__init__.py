"""Live broadcast sessions over API Gateway WebSockets: the Lambda code."""
