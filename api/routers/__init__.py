"""The API's routers, one module per noun; ``api.app.ROUTERS`` lists which are served."""
