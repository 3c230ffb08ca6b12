"""design layer of bids-glm."""
