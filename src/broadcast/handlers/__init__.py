"""One module per Lambda function; each is a thin adapter over broadcast.service."""
