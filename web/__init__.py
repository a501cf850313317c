"""The HTTP edge: the app, its middleware, the GraphQL view, and the pages links in messages open.

Each route and GraphQL mutation field owns its unit of work; nothing below this package commits.
"""
