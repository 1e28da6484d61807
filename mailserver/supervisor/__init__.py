"""The local system without Docker: what each service is, starting and stopping them in
order, and ``mailscan up``, which restarts a service that dies."""
