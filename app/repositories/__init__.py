"""Data access: typed functions over a SQLAlchemy `Connection`, one module per table.

Each function makes one or a few statements and returns plain values; the statements a hot
path runs are built once, at import, and stay private to their function. Units of work in
`app.services` are composed of these calls and handed to `Database.write`.
"""
