"""Django's PostgreSQL backend with a connection pool that rides out the server going away
(settings.DATABASES names it as the ENGINE; see `base`)."""
