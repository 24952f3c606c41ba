"""The local stack: API Gateway WebSocket emulator + moto DynamoDB and Step Functions, from template.yaml."""
