"""Reading and processing DICOM XA series: frames, mask subtraction, display windowing."""
