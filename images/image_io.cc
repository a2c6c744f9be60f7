// implemented by the image I/O work
