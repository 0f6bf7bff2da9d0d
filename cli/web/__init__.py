"""The local web page and JSON API that classify uploaded images (`slashcat serve`).

FastAPI, uvicorn and TensorFlow load only when this package is imported, never for
`slashcat --help`. `cli.web.app.create_app` builds the app for a loaded model;
`cli.web.server` binds the socket and runs uvicorn.
"""
