"""EM sensors: virtual EM sensors synthesised on any body model, and the EM-POSE recordings."""
