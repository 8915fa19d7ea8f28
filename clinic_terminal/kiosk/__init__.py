"""The reception kiosk: patient screen, staff screen, and the check flow behind them.

``flow`` holds the patient's check as a plain service (no HTTP), ``staff`` the reception side,
``app`` the thin local web app (its static files and headers in ``pages``, shared with the
portal), ``wiring`` the assembly from configuration, ``demo`` the virtual card used in demo mode.
"""
