"""tashooks command line, local simulator of tasmanian.cloud, Slack stand-in and demo."""
