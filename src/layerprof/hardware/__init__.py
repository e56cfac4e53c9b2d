"""What a device can do: DeviceSpec and LinkSpec, the built-in table, device files, measuring a machine."""
