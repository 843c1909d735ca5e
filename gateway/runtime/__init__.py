"""The process, at the top of the planes: serving and draining (serve, runner), worker
supervision, the services' lifetimes, and the health endpoints. With gateway/app.py (the two
applications) and gateway/services.py (the wiring) it is the only code that knows every plane.
"""
