"""The sandbox gateway: the sandbox contract over HTTP, so agents never hold cluster rights."""
