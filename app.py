"""lmscope's entry point: the navigation of every registered view (views.registry), then the page the URL names."""

from ui.navigation import navigation

navigation().run()
