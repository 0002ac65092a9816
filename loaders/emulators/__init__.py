"""Local stand-ins for the Analytics Engine SQL API and Stripe's meter-event endpoints."""
