"""The patient's own screens (自分の情報を見る): at home (``clinic-terminal portal``) and at the kiosk."""
