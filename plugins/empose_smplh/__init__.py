"""Body models for empose: SMPL-H from the licensed AMASS file (`smplh`) and a generated,
licence-free SMPL-H-compatible body (`embedded`), both driven by smplx's skinning functions."""
