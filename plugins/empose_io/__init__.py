"""Built-in plugin `io`: use a trained model on sensor data (`empose predict`), the plain sensor file
(`sensor_file`), and exports (empose motion file, BVH, joints npz)."""
